// The dev broker's connections answer without Nagle's delay, as Apache Kafka's do.
//
// librdkafka's mock cluster accepts connections with plain accept() and leaves Nagle on. A
// client that has several requests in flight (one ProduceRequest per partition) then gets its
// second response only after its delayed ACK of the first (40 ms on Linux): the dev broker
// looked 40 ms slower than a real broker for every multi-partition produce. This executable
// defines accept(), which the dynamic linker binds librdkafka's call to, and switches Nagle off
// on every accepted socket. It is linked into the dev broker only.
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

extern "C" int accept(int fd, sockaddr* addr, socklen_t* len) {
  using Accept = int (*)(int, sockaddr*, socklen_t*);
  static const Accept real = reinterpret_cast<Accept>(dlsym(RTLD_NEXT, "accept"));
  const int s = real(fd, addr, len);
  if (s >= 0) {
    const int one = 1;
    (void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return s;
}
