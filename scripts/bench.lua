-- wrk script for scripts/bench. BENCH_MODE selects what each request is:
--   get      a fixed GET (BENCH_PATH), with BENCH_BEARER as its credential if set
--   tokens   GET BENCH_PATH, each request with the next access token of BENCH_TOKENS (a file)
--   introspect  POST /v1/auth/introspect with BENCH_TOKEN, as the client of BENCH_BASIC
--            (base64 of client_id:client_secret)
--   login    POST /v1/auth/login for BENCH_EMAIL / BENCH_PASSWORD
--   signup   POST /v1/auth/signup with a new address on every request
--   refresh  POST /v1/auth/refresh; each response's refresh token is used for the next request
--            of the same session, so every session is a chain (BENCH_TOKENS holds one refresh
--            token per session, at least as many sessions as connections)
-- done() prints one JSON line that scripts/bench reads.

local mode = os.getenv("BENCH_MODE") or "get"
local path = os.getenv("BENCH_PATH") or "/healthz"
local threads = {}
thread_number = 0

function setup(thread)
  thread_number = thread_number + 1
  thread:set("thread_number", thread_number)
  table.insert(threads, thread)
end

local function read_lines(file)
  local lines = {}
  for line in io.lines(file) do
    if #line > 0 then table.insert(lines, line) end
  end
  return lines
end

local function json_string(text)
  return '"' .. text:gsub('\\', '\\\\'):gsub('"', '\\"') .. '"'
end

if mode == "get" then
  function init(args)
    wrk.method = "GET"
    wrk.path = path
    local bearer = os.getenv("BENCH_BEARER")
    if bearer then wrk.headers["Authorization"] = "Bearer " .. bearer end
  end
elseif mode == "tokens" then
  local tokens, next_token = {}, 1
  function init(args)
    tokens = read_lines(os.getenv("BENCH_TOKENS"))
    -- The threads start at different places so that no two send the same token together.
    next_token = math.floor(#tokens * (thread_number - 1) / tonumber(os.getenv("BENCH_THREADS") or "1")) + 1
  end
  function request()
    -- wrk also calls request() once in its main state, where init() has not run.
    if #tokens == 0 then return wrk.format("GET", path) end
    local token = tokens[next_token]
    next_token = next_token % #tokens + 1
    return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
  end
elseif mode == "introspect" then
  function init(args)
    wrk.method = "POST"
    wrk.path = "/v1/auth/introspect"
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
    wrk.headers["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC")
    wrk.body = "token=" .. os.getenv("BENCH_TOKEN")
  end
elseif mode == "login" then
  function init(args)
    wrk.method = "POST"
    wrk.path = "/v1/auth/login"
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = '{"email":' .. json_string(os.getenv("BENCH_EMAIL")) .. ',"password":' .. json_string(os.getenv("BENCH_PASSWORD")) .. '}'
  end
elseif mode == "signup" then
  local counter = 0
  local run = os.getenv("BENCH_RUN") or "0"
  function request()
    counter = counter + 1
    local body = '{"email":"bench-' .. run .. '-' .. thread_number .. '-' .. counter .. '@example.com","password":"a long enough passphrase"}'
    return wrk.format("POST", "/v1/auth/signup", { ["Content-Type"] = "application/json" }, body)
  end
elseif mode == "refresh" then
  -- A free list of current refresh tokens, one per session. A request takes one; its answer
  -- brings the session's next token back. Which answer belongs to which request does not
  -- matter: each session has exactly one current token, either in flight or in the list.
  local free = {}
  refreshed = 0
  function init(args)
    local all = read_lines(os.getenv("BENCH_TOKENS"))
    local count = tonumber(os.getenv("BENCH_THREADS") or "1")
    for index, token in ipairs(all) do
      if (index - 1) % count == thread_number - 1 then table.insert(free, token) end
    end
  end
  function request()
    local token = table.remove(free)
    if token == nil then
      -- Every session of this thread is in flight or broken: ask for something harmless.
      return wrk.format("GET", "/healthz")
    end
    return wrk.format("POST", "/v1/auth/refresh", { ["Content-Type"] = "application/json" }, '{"refresh_token":"' .. token .. '"}')
  end
  function response(status, headers, body)
    if status == 200 then
      local token = body:match('"refresh_token":"([^"]+)"')
      if token then
        table.insert(free, token)
        refreshed = refreshed + 1
      end
    end
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  -- In refresh mode only the answers that brought a new token count: the fallback requests
  -- of a thread whose sessions are all in flight are not refreshes.
  local refreshes = 0
  for _, thread in ipairs(threads) do refreshes = refreshes + (thread:get("refreshed") or 0) end
  io.write(string.format(
    '{"requests": %d, "refreshes": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, refreshes, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
