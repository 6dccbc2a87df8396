#!/bin/sh
# Readiness: every consumer instance (pid in its pid file) has subscribed. Usage: sh ready.sh PIDDIR
set -eu
found=0
for pidfile in "$1"/consumer.*.pid; do
  [ -e "$pidfile" ] || exit 1
  test -e "$1/ready.$(cat "$pidfile")" || exit 1
  found=1
done
[ "$found" = 1 ]
