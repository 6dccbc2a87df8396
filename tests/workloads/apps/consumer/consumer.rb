# A sneakers-style RabbitMQ consumer with bunny: prefetch 1, manual ack after the work.
# On TERM it finishes the message in hand, cancels the consumer, closes the connection and exits.
# Every processed message id is appended to PROCESSED_LOG; READY_DIR/ready.<pid> exists while subscribed.
require "bunny"
require "socket"

url = ENV.fetch("AMQP_URL")
queue_name = ENV.fetch("QUEUE", "jobs")
log_path = ENV.fetch("PROCESSED_LOG")
ready = File.join(ENV.fetch("READY_DIR"), "ready.#{Process.pid}")
version = File.read(File.join(__dir__, "VERSION")).strip
identity = "#{Socket.gethostname}-#{Process.pid}-#{version}"

# Stands for loading the application before it subscribes (seconds in a real app).
sleep Float(ENV.fetch("BOOT_SECONDS", "0"))

wake_r, wake_w = IO.pipe
%w[TERM INT].each { |sig| trap(sig) { wake_w.write_nonblock(".") rescue nil } }

connection = Bunny.new(url, automatically_recover: false, log_level: :warn)
connection.start
channel = connection.create_channel
channel.prefetch(1)
queue = channel.queue(queue_name, durable: true)
log = File.open(log_path, "a")
log.sync = true
busy = Mutex.new

consumer = queue.subscribe(manual_ack: true, consumer_tag: identity) do |delivery, _properties, body|
  busy.synchronize do
    sleep 0.3
    log.write("#{body} #{identity}\n")
    channel.ack(delivery.delivery_tag)
  end
end
File.write(ready, identity)
$stdout.puts "#{identity} consuming #{queue_name}"
$stdout.flush

wake_r.read(1)
consumer.cancel
busy.synchronize { } # the message in hand is done and acked
File.delete(ready) if File.exist?(ready)
channel.close
connection.close
$stdout.puts "#{identity} stopped"
