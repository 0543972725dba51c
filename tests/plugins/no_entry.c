/* no_entry.c — a shared object without the vitq_plugin_entry symbol. */
int not_a_plugin(void);
int not_a_plugin(void) { return 1; }
