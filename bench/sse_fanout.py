"""SSE fan-out: N subscribers of esm's event stream on loopback, K state changes.

Opens N connections to /v2/et/events?instance_id=ID (one thread, epoll, so the
client's own cost per socket is a few microseconds), waits until esm counts them,
then K times reports the instance down / up through the API and records, for each
subscriber, when the liveness.changed frame arrived after the report was sent.
Prints JSON: latency percentiles (ms) over N*K deliveries, and esm's resident memory
before and after the subscribers connected.

usage: sse_fanout.py API_URL PID INSTANCE_ID N K
"""
import json
import select
import socket
import sys
import time
import urllib.request
from urllib.parse import urlparse


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def report(api, instance, status):
    body = json.dumps({"status": status, "ttl_seconds": 3600}).encode()
    req = urllib.request.Request(f"{api}/v2/et/service_instances/{instance}/liveness", data=body, method="PUT",
                                 headers={"X-Broker-API-Version": "2.17", "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()


def current(api, instance):
    req = urllib.request.Request(f"{api}/v2/et/service_instances/{instance}/liveness",
                                 headers={"X-Broker-API-Version": "2.17"})
    return json.load(urllib.request.urlopen(req))["status"]


def main():
    api, pid, instance, n, k = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    url = urlparse(api)
    before = rss_kb(pid)
    poller = select.epoll()
    socks = {}
    request = (f"GET /v2/et/events?instance_id={instance}&type=liveness.changed HTTP/1.1\r\n"
               f"Host: {url.netloc}\r\nAccept: text/event-stream\r\n\r\n").encode()
    for _ in range(n):
        s = socket.create_connection((url.hostname, url.port))
        s.sendall(request)
        s.setblocking(False)
        poller.register(s.fileno(), select.EPOLLIN)
        socks[s.fileno()] = s
    # Every subscriber has its response head once it is subscribed.
    heads = {fd: b"" for fd in socks}
    pending = set(socks)
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(1):
            heads[fd] += socks[fd].recv(65536)
            if b"\r\n\r\n" in heads[fd]:
                pending.discard(fd)
    if pending:
        sys.exit(f"{len(pending)} subscribers got no answer")
    time.sleep(0.5)
    after = rss_kb(pid)
    latencies = []
    # Each report must change the status, or no event follows.
    status = "down" if current(api, instance) != "down" else "up"
    for _ in range(k):
        waiting = set(socks)
        t0 = time.perf_counter()
        report(api, instance, status)
        deadline = time.monotonic() + 10
        while waiting and time.monotonic() < deadline:
            for fd, _ in poller.poll(1):
                data = socks[fd].recv(65536)
                if fd in waiting and b"event: liveness.changed" in data:
                    latencies.append((time.perf_counter() - t0) * 1000)
                    waiting.discard(fd)
        if waiting:
            sys.exit(f"{len(waiting)} subscribers did not get the change within 10 s")
        status = "up" if status == "down" else "down"
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    print(json.dumps({"subscribers": n, "changes": k, "p50_ms": round(pick(0.5), 2), "p99_ms": round(pick(0.99), 2),
                      "max_ms": round(latencies[-1], 2), "rss_before_kb": before, "rss_after_kb": after,
                      "kb_per_subscriber": round((after - before) / n, 1)}))
    for s in socks.values():
        s.close()


main()
