#!/bin/sh
# Readiness: this host's sidekiq (the pid in its pid file) has a heartbeat in Redis and is not quiet.
# Usage: sh ready.sh REDIS_URL PIDFILE
set -eu
pid=$(cat "$2")
for identity in $(redis-cli -u "$1" --raw smembers processes); do
  case "$identity" in
    "$(hostname):$pid:"*)
      beat=$(redis-cli -u "$1" --raw hget "$identity" beat)
      quiet=$(redis-cli -u "$1" --raw hget "$identity" quiet)
      [ -n "$beat" ] && [ "$quiet" != "true" ] && exit 0 ;;
  esac
done
exit 1
