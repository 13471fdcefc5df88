from syncjob.cli import entrypoint

entrypoint()
