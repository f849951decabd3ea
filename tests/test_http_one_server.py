"""One server per port and per data directory (issue 13, hole 5). Before: a second `parity serve`
with another data directory bound the same port (libmicrohttpd's address-reuse option, i.e.
SO_REUSEPORT) and took a share of the requests, so a revocation on one did not apply on the
other; a second one on the same data directory failed with a message that named no process.
Now: binding a port in use fails at once naming HOST:PORT, and DATA/lock (an flock holding the
server's pid) names the server that holds the directory. Debian's python3."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import PARITY, World, run  # noqa: E402

A = World("parity-one-a-", ["al1"])
B = World("parity-one-b-", ["al1"])
check = A.check
A.start()


def serve(data, port, timeout=30):
    """A second server that should refuse to start: (exit status, stderr); None if still running."""
    p = subprocess.Popen([PARITY, "serve", "--data", data, "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=timeout)
        return p.returncode, err
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return None, ""


rc, err = serve(B.data, A.port)
check(rc not in (None, 0), "a second server on a port in use does not start (exit %s)" % rc)
check("127.0.0.1:%d" % A.port in err and "already in use" in err,
      "... and says which address is in use: %r" % err.strip()[-300:])
check(A.req("GET", "/healthz")[0] == 200, "the first server still answers")

rc, err = serve(A.data, 0)
check(rc not in (None, 0), "a second server on the same data directory does not start (exit %s)" % rc)
check("data directory %s is in use by parity pid %d" % (A.data, A.server.pid) in err,
      "... and names the holder's pid %d: %r" % (A.server.pid, err.strip()[-300:]))

r = run("keys", "create", "--org", "al1", "--data", A.data, check=False)
check(r.returncode != 0 and "another process" in r.stderr,
      "a key cannot be issued behind the running server's back: %r" % r.stderr.strip()[-200:])

check(A.stop() == 0, "clean shutdown")
A.start()
check(A.req("GET", "/healthz")[0] == 200, "once the first server stopped, the data directory is free again")
check(A.stop() == 0, "clean shutdown again")
sys.exit(A.summary("test_http_one_server"))
