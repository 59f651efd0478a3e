import a_module_that_is_not_a_dependency  # noqa: F401


def run() -> str:
    return "unreachable"
