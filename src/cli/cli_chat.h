/* cli_chat.h — `parity tokenizer chat-render` (cli_chat.c). */
#ifndef PARITY_CLI_CLI_CHAT_H
#define PARITY_CLI_CLI_CHAT_H

/* argv[1] is "chat-render". Returns the exit status. */
int cli_chat_render(int argc, char **argv);

#endif
