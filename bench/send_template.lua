-- wrk script: POST /messages/send-template to a distinct recipient per request.
-- Arguments (after --): the API key and the template's name (one parameter, {{1}}).
local counter = 0
local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  key = args[1]
  template = args[2]
end

function request()
  counter = counter + 1
  -- +62812 + thread digit + 7 digits: a valid Indonesian mobile number, new for every request
  local body = string.format(
    '{"to":"+62812%d%07d","template_name":"%s","template_source":"CRM","params":["B%d-%d"]}',
    tid, counter, template, tid, counter)
  return wrk.format("POST", "/whatsapp/open/v1/messages/send-template",
    {["x-api-key"] = key, ["content-type"] = "application/json"}, body)
end
