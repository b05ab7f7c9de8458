#include <string.h>
#include "master.h"
#include "msg.h"
void admin_rpc_handle(struct master *m, const struct chan_msg *msg)
{
    struct msg_admin_req req;
    if (msg->hdr.len < sizeof(req))
        return;
    memcpy(&req, msg->data, sizeof(req));
    master_admin_reply(m, req.id, 12, "not implemented", NULL, 0);
}
