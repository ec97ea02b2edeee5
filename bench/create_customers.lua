-- wrk script: POST /customers with a unique email per request.
local counter = 0
local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  key = args[1]
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"email":"u%d-%d@bench.example","firstName":"Bench","lastName":"User","tags":["bench"]}',
    tid, counter)
  return wrk.format("POST", "/customer/open/v1/customers",
    {["x-api-key"] = key, ["content-type"] = "application/json"}, body)
end
