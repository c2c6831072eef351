-- wrk script: GET /sms_codes/{mobile}/?image_code_id={id}&text=acde with a fresh mobile (so the
-- 60 s resend guard never refuses) and a captcha id that bench/verifications.sh pre-seeded in
-- Redis as img_{id} = "ACDE" (so every request takes the full success path: the claim script
-- with its captcha check, then the apalis push). Thread t uses indexes
-- t*STRIDE .. t*STRIDE+STRIDE-1.
local stride = tonumber(os.getenv("STRIDE") or "150000")
local thread_count = 0

function setup(thread)
  thread:set("base", thread_count * stride)
  thread_count = thread_count + 1
end

local n = 0

request = function()
  local i = base + (n % stride)
  n = n + 1
  local id = string.format("00000000-0000-4000-8000-%012d", i)
  local mobile = string.format("139%08d", i)
  return wrk.format("GET", "/sms_codes/" .. mobile .. "/?image_code_id=" .. id .. "&text=acde")
end
