/*
 * delay-line: a userspace link emulator for kernels without sch_netem (nat-lab, meshsock).
 *
 * It runs inside a "wire" network namespace that holds two veth ends, A and B, spliced into a link:
 *
 *     router ns            wire ns                         inet ns
 *   [ wan ]===veth===[ A ]--> hold d_ab ± j_ab -->[ B ]===veth===[ s-x ]
 *                    [ A ]<-- hold d_ba ± j_ba <--[ B ]
 *
 * Every Ethernet frame that arrives on A is sent out of B after d_ab (plus a uniform random jitter within ±j_ab),
 * and the other way round. Frames keep their order in each direction (a frame is never released before the one
 * ahead of it), so jitter stretches gaps but never reorders. Loss is not done here: nat-lab drops frames with
 * nftables `numgen random` on the veth ends, so this program only delays.
 *
 * AF_PACKET raw sockets, one per interface:
 *   - PACKET_VNET_HDR: frames carry a virtio_net header, so checksum-offload and GSO frames that veth hands over
 *     stay valid when sent on (without it, partial-checksum frames would leave with bad checksums);
 *   - PACKET_IGNORE_OUTGOING: a socket does not see the frames we send out of its own interface (no loops);
 *   - promiscuous membership, so frames for any MAC address are taken.
 *
 * Usage: delay-line -a IF_A -b IF_B [-d US] [-D US] [-j US] [-J US] [-q LIMIT]
 *   -d / -D  delay A→B / B→A in microseconds (default 0)
 *   -j / -J  jitter A→B / B→A in microseconds: each frame's delay varies uniformly within ±jitter (default 0)
 *   -q       queue limit per direction in frames; beyond it frames are dropped and counted (default 10000)
 * Prints "ready" once both sockets are bound; on SIGTERM/SIGINT prints one JSON line of counters and exits 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME (65536 + 256) /* GSO frame plus virtio_net header and Ethernet header */

struct frame {
  uint64_t due_ns;
  uint32_t len;
  unsigned char data[];
};

struct dir {
  int in_fd, out_fd;
  uint64_t delay_ns, jitter_ns;
  struct frame **ring;
  size_t cap, head, count;
  uint64_t last_due;
  uint64_t rx, tx, dropped_queue, dropped_send;
};

static volatile sig_atomic_t stop_flag = 0;
static uint64_t rng_state;

static void on_signal(int sig) {
  (void)sig;
  stop_flag = 1;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}

static void die(const char *what) {
  fprintf(stderr, "delay-line: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int open_iface(const char *name) {
  unsigned idx = if_nametoindex(name);
  if (idx == 0) die(name);
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
  if (fd < 0) die("socket(AF_PACKET)");
  int one = 1;
  if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) die("PACKET_VNET_HDR");
  if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) die("PACKET_IGNORE_OUTGOING");
  int buf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = (int)idx;
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) die("bind");
  struct packet_mreq mr;
  memset(&mr, 0, sizeof mr);
  mr.mr_ifindex = (int)idx;
  mr.mr_type = PACKET_MR_PROMISC;
  if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) die("PACKET_MR_PROMISC");
  return fd;
}

static void enqueue(struct dir *d, const unsigned char *data, size_t len, uint64_t now) {
  d->rx++;
  if (d->count == d->cap) {
    d->dropped_queue++;
    return;
  }
  uint64_t due = now + d->delay_ns;
  if (d->jitter_ns > 0) {
    uint64_t span = 2 * d->jitter_ns + 1;
    int64_t off = (int64_t)(rng_next() % span) - (int64_t)d->jitter_ns;
    due = (off < 0 && (uint64_t)(-off) > due - now) ? now : (uint64_t)((int64_t)due + off);
  }
  if (due < d->last_due) due = d->last_due; /* keep order */
  d->last_due = due;
  struct frame *f = malloc(sizeof *f + len);
  if (f == NULL) {
    d->dropped_queue++;
    return;
  }
  f->due_ns = due;
  f->len = (uint32_t)len;
  memcpy(f->data, data, len);
  d->ring[(d->head + d->count) % d->cap] = f;
  d->count++;
}

static void flush(struct dir *d, uint64_t now) {
  while (d->count > 0) {
    struct frame *f = d->ring[d->head];
    if (f->due_ns > now) return;
    if (send(d->out_fd, f->data, f->len, 0) < 0)
      d->dropped_send++;
    else
      d->tx++;
    free(f);
    d->head = (d->head + 1) % d->cap;
    d->count--;
  }
}

static void drain(struct dir *d, unsigned char *buf) {
  for (;;) {
    ssize_t n = recv(d->in_fd, buf, MAX_FRAME, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) return; /* EAGAIN or error: wait for the next poll */
    if (n > MAX_FRAME) {
      d->dropped_queue++;
      continue;
    }
    enqueue(d, buf, (size_t)n, now_ns());
  }
}

static uint64_t parse_u64(const char *s, const char *what) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') {
    fprintf(stderr, "delay-line: bad %s: %s\n", what, s);
    exit(2);
  }
  return (uint64_t)v;
}

int main(int argc, char **argv) {
  const char *if_a = NULL, *if_b = NULL;
  uint64_t d_ab = 0, d_ba = 0, j_ab = 0, j_ba = 0, limit = 10000;
  int opt;
  while ((opt = getopt(argc, argv, "a:b:d:D:j:J:q:")) != -1) {
    switch (opt) {
      case 'a': if_a = optarg; break;
      case 'b': if_b = optarg; break;
      case 'd': d_ab = parse_u64(optarg, "-d"); break;
      case 'D': d_ba = parse_u64(optarg, "-D"); break;
      case 'j': j_ab = parse_u64(optarg, "-j"); break;
      case 'J': j_ba = parse_u64(optarg, "-J"); break;
      case 'q': limit = parse_u64(optarg, "-q"); break;
      default:
        fprintf(stderr, "usage: delay-line -a IF_A -b IF_B [-d US] [-D US] [-j US] [-J US] [-q LIMIT]\n");
        return 2;
    }
  }
  if (if_a == NULL || if_b == NULL || limit == 0) {
    fprintf(stderr, "usage: delay-line -a IF_A -b IF_B [-d US] [-D US] [-j US] [-J US] [-q LIMIT]\n");
    return 2;
  }
  rng_state = now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
  if (rng_state == 0) rng_state = 1;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  int fa = open_iface(if_a), fb = open_iface(if_b);
  struct dir dirs[2];
  memset(dirs, 0, sizeof dirs);
  dirs[0] = (struct dir){.in_fd = fa, .out_fd = fb, .delay_ns = d_ab * 1000, .jitter_ns = j_ab * 1000, .cap = limit};
  dirs[1] = (struct dir){.in_fd = fb, .out_fd = fa, .delay_ns = d_ba * 1000, .jitter_ns = j_ba * 1000, .cap = limit};
  for (int i = 0; i < 2; i++) {
    dirs[i].ring = calloc(limit, sizeof(struct frame *));
    if (dirs[i].ring == NULL) die("calloc");
  }
  static unsigned char buf[MAX_FRAME];
  struct pollfd pfd[2] = {{.fd = fa, .events = POLLIN}, {.fd = fb, .events = POLLIN}};
  printf("ready\n");
  fflush(stdout);

  while (!stop_flag) {
    uint64_t now = now_ns();
    flush(&dirs[0], now);
    flush(&dirs[1], now);
    uint64_t next = UINT64_MAX;
    for (int i = 0; i < 2; i++)
      if (dirs[i].count > 0 && dirs[i].ring[dirs[i].head]->due_ns < next) next = dirs[i].ring[dirs[i].head]->due_ns;
    struct timespec ts, *tsp = NULL;
    if (next != UINT64_MAX) {
      uint64_t wait = next > now ? next - now : 0;
      ts.tv_sec = (time_t)(wait / 1000000000ull);
      ts.tv_nsec = (long)(wait % 1000000000ull);
      tsp = &ts;
    }
    int r = ppoll(pfd, 2, tsp, NULL);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("ppoll");
    }
    if (pfd[0].revents & POLLIN) drain(&dirs[0], buf);
    if (pfd[1].revents & POLLIN) drain(&dirs[1], buf);
  }
  printf("{\"event\":\"stats\",\"ab\":{\"rx\":%llu,\"tx\":%llu,\"droppedQueue\":%llu,\"droppedSend\":%llu},"
         "\"ba\":{\"rx\":%llu,\"tx\":%llu,\"droppedQueue\":%llu,\"droppedSend\":%llu}}\n",
         (unsigned long long)dirs[0].rx, (unsigned long long)dirs[0].tx, (unsigned long long)dirs[0].dropped_queue,
         (unsigned long long)dirs[0].dropped_send, (unsigned long long)dirs[1].rx, (unsigned long long)dirs[1].tx,
         (unsigned long long)dirs[1].dropped_queue, (unsigned long long)dirs[1].dropped_send);
  fflush(stdout);
  return 0;
}
