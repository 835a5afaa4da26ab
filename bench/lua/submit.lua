-- wrk script: POST /api/chat/submit/ with a fixed JSON body.
-- The same script drives the reference server, which ignores the key.
wrk.method = "POST"
wrk.body = '{"message":"benchmark message","response_type":"auto","thinking_time":"standard"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("CHATRELAY_BENCH_API_KEY") or ""
