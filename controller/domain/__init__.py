"""Every operator action once (nodes, apps, images, networks, onboarding, PCI adapters,
desired state, agent releases, users, tokens).  The API, the UI, git sync and the rollout
engine call these alike; the actor is a parameter and nothing here touches the web stack."""
