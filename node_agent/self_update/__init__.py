"""Agent self-update (EVE's baseOS A/B with a commit window, for a Python agent).

    version      the running code's version (rewritten in each release bundle)
    state        the files under ``<state>/agent`` shared by the launcher and the agent
    bundle       unpack a release tarball safely and check its code digest
    manifest     verify a release's signed manifest against the controller's signing certs
    installer    download (image store), verify, install into ``versions/<version>``
    updater      the agent's side: install a new target, report progress, commit a trial

The launcher (``node_agent.launcher``) owns which version runs.
"""
