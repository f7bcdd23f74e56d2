"""Dev only (the runtime never imports it): time and memory of every case against plain sampling. ``python
-m lib_guided.bench``.
"""
