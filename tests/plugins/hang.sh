#!/bin/sh
sleep 30
echo "never"
