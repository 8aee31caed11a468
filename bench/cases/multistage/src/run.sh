#!/bin/sh
ls /opt/app/share | wc -l
