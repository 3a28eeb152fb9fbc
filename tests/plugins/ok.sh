#!/bin/sh
echo "TEST OK - all good | load=0.5;4;8;0 used=42%;80;90"
exit 0
