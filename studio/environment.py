"""Environment variables the studio reads (no imports: the job runner uses this too).

The password stays in the server process: it is removed from every job's environment.
"""

PASSWORD_ENV = "NEURON_EXPORT_PASSWORD"
MODEL_ROOTS_ENV = "NEURON_EXPORT_MODEL_ROOTS"  # extra folders (os.pathsep-separated) model folders may be in
# Never passed on to job subprocesses: a compile or a benchmark has no use for them.
PRIVATE_ENV = (PASSWORD_ENV,)
