#!/bin/sh
echo "LOUD first line"
yes "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" | head -c 2000000
exit 0
