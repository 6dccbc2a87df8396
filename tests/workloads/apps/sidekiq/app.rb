# A sidekiq worker app: SlowJob takes a while, then records its id in the "done" set.
require "sidekiq"

# Stands for loading the application (a Rails app takes seconds to boot): no heartbeat before it is done.
sleep Float(ENV.fetch("BOOT_SECONDS", "0"))

VERSION = File.read(File.join(__dir__, "VERSION")).strip

class SlowJob
  include Sidekiq::Worker
  sidekiq_options retry: 5

  def perform(id)
    sleep 0.6
    Sidekiq.redis do |redis|
      redis.sadd("done", id.to_s)
      redis.hset("done_by", id.to_s, "#{Socket.gethostname} #{Process.pid} #{VERSION}")
    end
  end
end
