"""The peak resident memory of the calling process, for the benchmark scripts' figures."""


def peak_gb():
    """This process's peak resident memory (``VmHWM`` of ``/proc/self/status``), GB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError("no VmHWM in /proc/self/status")
