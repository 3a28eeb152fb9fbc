#!/bin/sh
echo "TEST UNKNOWN - cannot tell"
exit 3
