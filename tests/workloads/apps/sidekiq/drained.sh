#!/bin/sh
# Drained: the quieted sidekiq ($KAPISTRANO_PID) says in its Redis heartbeat that it is quiet and runs no job.
# Usage: sh drained.sh REDIS_URL
set -eu
for identity in $(redis-cli -u "$1" --raw smembers processes); do
  case "$identity" in
    "$(hostname):$KAPISTRANO_PID:"*)
      quiet=$(redis-cli -u "$1" --raw hget "$identity" quiet)
      busy=$(redis-cli -u "$1" --raw hget "$identity" busy)
      [ "$quiet" = "true" ] && [ "$busy" = "0" ] && exit 0 ;;
  esac
done
exit 1
