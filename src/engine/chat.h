/* chat.h — the plain chat template: how a list of chat messages becomes text when the model
 * has no chat template parity recognises. The server renders prompts with it and
 * `parity finetune` renders training conversations with it, so a model fine-tuned on chats
 * sees at serving time exactly the text it was trained on.
 *
 *   System: <text>\n\nUser: <text>\n\nAssistant: <text>\n\n ... Assistant:
 *
 * Each message is its role prefix, its text, then PT_CHAT_PLAIN_SEP (each piece tokenized
 * on its own); a prompt for generation ends with PT_CHAT_PLAIN_GEN and generation stops at
 * PT_CHAT_PLAIN_STOP. */
#ifndef PARITY_ENGINE_CHAT_H
#define PARITY_ENGINE_CHAT_H

#define PT_CHAT_PLAIN_SEP "\n\n"
#define PT_CHAT_PLAIN_GEN "Assistant:"
#define PT_CHAT_PLAIN_STOP "\n\nUser:"

/* The prefix of a message of role "system" (or "developer"), "user" or "assistant":
 * "System: ", "User: ", "Assistant: ". NULL for any other role. */
const char *pt_chat_plain_prefix(const char *role);

#endif
