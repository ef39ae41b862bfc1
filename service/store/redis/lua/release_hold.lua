-- ARGV: prefix, hold id.
release_hold(arg())
return 1
