#!/bin/sh
echo '{"service":"app","ok":true}' | jq -c .
