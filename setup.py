"""Build the optional C page decoder; everything else is configured in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cassnb._frames._native.columnar",
            sources=["cassnb/_frames/_native/columnar.c"],
            extra_compile_args=["-O3"],
            # Without a C compiler the install still succeeds; cassnb then decodes pages in
            # Python and says so once on the "cassnb" logger.
            optional=True,
        )
    ]
)
