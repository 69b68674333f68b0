"""HTTP routes: thin translations to the domain classes in service.domain."""
