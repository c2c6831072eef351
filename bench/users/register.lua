-- wrk script for POST /users/: every request registers a new account with a unique username
-- and mobile. Thread t (1-based) uses mobiles 13{t}{8-digit counter} and usernames bench{t}_{n};
-- bench/users.sh pre-seeds an SMS code "123456" for each of them in Redis.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  counter = 0
  created = 0
  other = 0
end

function request()
  counter = counter + 1
  local mobile = string.format("13%d%08d", tid, counter)
  local body = string.format(
    '{"username":"bench%d_%d","password":"password123","password2":"password123","sms_code":"123456","mobile":"%s","allow":"true"}',
    tid, counter, mobile)
  return wrk.format("POST", "/users/", { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  if status == 201 then created = created + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local c, o = 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    o = o + t:get("other")
  end
  io.write(string.format("CREATED %d OTHER %d\n", c, o))
end
