#!/bin/sh
echo "TEST CRITICAL - on fire | temp=97C;80;90"
exit 2
