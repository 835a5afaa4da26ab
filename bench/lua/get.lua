-- wrk script: GET /api/chat/requests/{id}/ (the id is in the URL wrk is given).
wrk.method = "GET"
wrk.headers["X-API-Key"] = os.getenv("CHATRELAY_BENCH_API_KEY") or ""
