"""The subprocess backend: namespaced, cgroup-limited process trees forked from a zygote."""
