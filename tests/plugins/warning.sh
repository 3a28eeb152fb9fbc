#!/bin/sh
echo "TEST WARNING - getting warm"
exit 1
