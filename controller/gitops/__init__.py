"""GitOps: the controller follows a git repository of site folders (``sites/<site>/``).

models      GitSource (the one followed repository, its last good revision and last
            error), GitObject (what the repository owns), NodeRevision (which
            revision produced a node's config generation)
repo        the ``git`` command: fetch a branch into a private mirror, read a tree
manifests   YAML documents → validated objects, errors with file, line and reason
sync        one sync = one transaction; a bad commit changes nothing
ownership   git-owned objects are read-only for the API and the UI
worker      the periodic sync thread
"""
