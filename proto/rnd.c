/* Random bytes from the kernel (see rnd.h). */
#include "proto/rnd.h"

#include <errno.h>
#include <sys/random.h>
#include <sys/types.h>

int rnd_fill(void *p, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t r = getrandom((char *)p + got, len - got, 0);
        if (r == -1) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)r;
    }
    return 0;
}
