#!/bin/sh
echo "TEST WEIRD"
exit 7
