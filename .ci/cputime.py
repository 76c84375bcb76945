# Runs a command as a child subreaper, so every descendant (also ones whose parent exits without reaping them, e.g.
# test hosts) is reaped here and counted; prints wall and user/sys CPU seconds of the whole tree.
import ctypes, os, sys, resource, time
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
t0 = time.time()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
rc = None
while True:
    try:
        p, status = os.wait()
    except ChildProcessError:
        break
    if p == pid:
        rc = os.waitstatus_to_exitcode(status)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"CPUTIME rc={rc} wall={time.time()-t0:.1f}s user={ru.ru_utime:.1f}s sys={ru.ru_stime:.1f}s total={ru.ru_utime+ru.ru_stime:.1f}s", file=sys.stderr)
sys.exit(rc if rc is not None else 1)
