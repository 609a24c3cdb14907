"""Examples of using the tierroute classifier from LiteLLM (proxy YAML and Python SDK)."""
