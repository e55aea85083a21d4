"""The real-process test bed (issue 7): real ``p2pauction`` processes on emulated hosts.

Apart from the deterministic simulator (:mod:`simulations`), which runs the same cores in
virtual time and never imports this package: here timing is real, hosts are network namespaces
and links are shaped by the kernel.

Modules: :mod:`testbed.netns` (namespaces, veth pairs, link shaping, partitions, teardown) and
:mod:`testbed.scenario` (the workload, the faults and the convergence checks;
``sudo python -m testbed --hosts 12 --seed 1 --report DIR``).
"""
