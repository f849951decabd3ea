/* see chat.h */
#include <string.h>

#include "engine/chat.h"

const char *pt_chat_plain_prefix(const char *role) {
    if (!role) return NULL;
    if (!strcmp(role, "system") || !strcmp(role, "developer")) return "System: ";
    if (!strcmp(role, "user")) return "User: ";
    if (!strcmp(role, "assistant")) return "Assistant: ";
    return NULL;
}
