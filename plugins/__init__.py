"""Built-in method plugins, registered under the ``echobench.methods`` entry-point group like any third-party one."""
