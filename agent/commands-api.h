/* The API passthrough commands of the control protocol; see commands-api.c. */
#pragma once

#include "commands.h"

cJSON *commands_login(struct commands *ctx, struct control_client *c, const cJSON *req);
cJSON *commands_account(struct commands *ctx, struct control_client *c, const cJSON *req);
cJSON *commands_socket(struct commands *ctx, struct control_client *c, const cJSON *req);
cJSON *commands_tunnel(struct commands *ctx, struct control_client *c, const cJSON *req);
