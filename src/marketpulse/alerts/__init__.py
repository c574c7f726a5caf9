"""Price monitoring and alerts: rules, store, engine, monitor, notifiers, edge."""
