#!/bin/sh
echo "starting on ${PORT} with $(grep -c = /app/config.txt) settings"
exec httpd -f -p "${PORT}" -h /app
