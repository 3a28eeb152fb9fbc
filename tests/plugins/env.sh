#!/bin/sh
echo "ENV secret=${HERALD_TEST_SECRET:-none} path=$PATH"
exit 0
