"""The compile farm: an export's components and buckets, and sweeps of exports, as Ray tasks.

Ray is optional (`pip install "neuron_export[ray]"` or `-r requirements-ray.txt`): it is imported
only when a Ray executor is asked for, and its absence is a one-line error naming the install.
"""
