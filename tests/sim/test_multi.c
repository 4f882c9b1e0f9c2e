/* SPDX-License-Identifier: MIT */
/* Several partitions at once, each driven by its own thread. */
#include "sim_test.h"

#include <dirent.h>
#include <pthread.h>
#include <unistd.h>

struct worker {
    struct sim_daemon *d;
    const char *name;
    uint32_t version;
    int rounds;
    int result;
    char why[160];
};

#define WFAIL(...)                                                                       \
    do {                                                                                 \
        snprintf(w->why, sizeof(w->why), __VA_ARGS__);                                   \
        w->result = -1;                                                                  \
        goto out;                                                                        \
    } while (0)

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->result = 0;
    struct sim_vm *vm = sim_vm_create(w->d, w->name);
    if (!vm) {
        snprintf(w->why, sizeof(w->why), "create failed");
        w->result = -1;
        return NULL;
    }
    for (int r = 0; r < w->rounds; r++) {
        int n = sim_bringup(vm, w->version);
        if (n < ECHO_CHANNELS)
            WFAIL("round %d: bringup %d", r, n);
        struct sim_chan *c0 = sim_open_echo(vm, 0, 4, 4);
        struct sim_chan *c1 = sim_open_echo(vm, 1, 2, 2);
        if (!c0 || !c1)
            WFAIL("round %d: open", r);
        if (sim_echo_stream(c0, 200, 512, true) != 0)
            WFAIL("round %d: stream c0", r);
        if (sim_echo_stream(c1, 200, 100, false) != 0)
            WFAIL("round %d: stream c1", r);
        if (sim_echo_roundtrip(c0, 8000, 99, true) != 0)
            WFAIL("round %d: large", r);
        if (sim_chan_close(c0) != 0 || sim_chan_close(c1) != 0)
            WFAIL("round %d: close", r);
        if (sim_unload(vm) != 0)
            WFAIL("round %d: unload", r);
    }
    if (vm->bad_host_msgs)
        WFAIL("%llu malformed host messages", (unsigned long long)vm->bad_host_msgs);
out:
    sim_vm_free(vm);
    return NULL;
}

static void run_parallel(struct fx *f, const char *const *names, int n, int rounds)
{
    pthread_t th[8];
    struct worker w[8];
    static const uint32_t vers[] = {VMBUS_VERSION_WIN10_V5_3, VMBUS_VERSION_WIN8_1,
                                    VMBUS_VERSION_WIN10_V5, VMBUS_VERSION_WIN10};
    for (int i = 0; i < n; i++) {
        w[i] = (struct worker){.d = f->d, .name = names[i], .version = vers[i % 4],
                               .rounds = rounds};
        SIM_ASSERT(pthread_create(&th[i], NULL, worker_main, &w[i]) == 0, "thread");
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < n; i++)
        SIM_ASSERT(w[i].result == 0, "%s (%s): %s", w[i].name, sim_version_str(w[i].version),
                   w[i].why);
}

static void test_two_partitions(void **state)
{
    static const char *const names[] = {VM_A, VM_B};
    run_parallel(*state, names, 2, 10);
}

static void test_four_partitions(void **state)
{
    static const char *const names[] = {VM_A, VM_B, VM_C, VM_D};
    run_parallel(*state, names, 4, 5);
}

/* Partitions count and names: two live VMs show up, and a third whose name
 * has no [vm] section connects with the [vm default] VSPs (the suite's
 * default section gives echo) without disturbing the others. */
static void test_partition_accounting(void **state)
{
    struct fx *f = *state;
    struct sim_vm *a = sim_up(f->d, VM_A, VMBUS_VERSION_WIN10_V5_3);
    struct sim_vm *b = sim_up(f->d, VM_B, VMBUS_VERSION_WIN8);
    SIM_ASSERT(a && b, "two up");
    SIM_ASSERT(vmbusd_partition_count(simd_vmbusd(f->d)) == 2, "count %u",
               vmbusd_partition_count(simd_vmbusd(f->d)));
    SIM_ASSERT(a->partition_id != b->partition_id, "same partition id");
    struct sim_vm *c = sim_vm_create(f->d, "vm-not-configured");
    SIM_ASSERT(c != NULL, "a VM without a [vm] section refused at setup");
    int n = sim_bringup(c, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(n == ECHO_CHANNELS, "VM without a [vm] section: %d offers, expected the %d of "
               "[vm default]", n, ECHO_CHANNELS);
    SIM_ASSERT(vmbusd_partition_count(simd_vmbusd(f->d)) == 3, "count %u with the third VM",
               vmbusd_partition_count(simd_vmbusd(f->d)));
    SIM_ASSERT(c->partition_id != a->partition_id && c->partition_id != b->partition_id,
               "third VM shares a partition id");
    sim_vm_free(c);
    struct sim_chan *ca = sim_open_echo(a, 0, 4, 4), *cb = sim_open_echo(b, 0, 4, 4);
    SIM_ASSERT(ca && cb, "open");
    SIM_ASSERT(sim_echo_roundtrip(ca, 64, 1, true) == 0 && sim_echo_roundtrip(cb, 64, 1, true) == 0,
               "echo");
    sim_vm_free(a);
    sim_vm_free(b);
}

/* Many VMMs disconnect at the same moment, with open channels: the
 * teardowns must not starve vmbusd's worker pool (each teardown waits for
 * its channels' VSP closes, which need workers too). */
static void test_mass_disconnect(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    enum { N = 12 };
    struct sim_vm *vms[N];
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof(name), "mass-%d", i);
        vms[i] = sim_up(f->d, name, VMBUS_VERSION_WIN10_V5_3);
        SIM_ASSERT(vms[i] != NULL, "up %d", i);
        SIM_ASSERT(sim_open_echo(vms[i], 0, 2, 2) && sim_open_echo(vms[i], 1, 2, 2), "open %d",
                   i);
    }
    for (int i = 0; i < N; i++)
        sim_vm_free(vms[i]);
    uint64_t t0 = sim_now_ms();
    while (vmbusd_partition_count(simd_vmbusd(f->d)) > 1 && sim_now_ms() - t0 < 5000)
        sim_poll(f->good, 10);
    fx_good_check(f, "12 partitions disconnecting at once");
    SIM_ASSERT(vmbusd_partition_count(simd_vmbusd(f->d)) == 1, "%u partitions left",
               vmbusd_partition_count(simd_vmbusd(f->d)));
}

/* Voluntary context switches of every thread of this process but the
 * caller: vmbusd's event loop and workers (the simulated guests run in the
 * caller). */
static long long vmbusd_thread_switches(void)
{
    DIR *dir = opendir("/proc/self/task");
    long long sum = 0;
    pid_t me = gettid();
    for (struct dirent *e; dir && (e = readdir(dir)) != NULL;) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == me)
            continue;
        char path[300], line[128];
        snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
        FILE *fp = fopen(path, "r");
        while (fp && fgets(line, sizeof(line), fp))
            if (strncmp(line, "voluntary_ctxt_switches:", 24) == 0)
                sum += atoll(line + 24);
        if (fp)
            fclose(fp);
    }
    if (dir)
        closedir(dir);
    return sum;
}

/* Partitions that are connected, have open channels and nothing to say cost
 * vmbusd no wake-ups: nothing polls them (1000 such partitions must not keep
 * a CPU busy).  One quiet window out of several is enough, since work still
 * in flight when the first one starts may wake a thread. */
static void test_idle_partitions_sleep(void **state)
{
    struct fx *f = *state;
    enum { N = 4 };
    struct sim_vm *vms[N];
    struct sim_chan *chs[N][ECHO_CHANNELS];
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof(name), "idle-%d", i);
        vms[i] = sim_up(f->d, name, VMBUS_VERSION_WIN10_V5_3);
        SIM_ASSERT(vms[i] != NULL, "up %d", i);
        for (int c = 0; c < ECHO_CHANNELS; c++) {
            chs[i][c] = sim_open_echo(vms[i], c, 2, 2);
            SIM_ASSERT(chs[i][c] && sim_echo_roundtrip(chs[i][c], 64, 1, false) == 0,
                       "open + echo %d/%d", i, c);
        }
    }
    long long woke = -1;
    for (int w = 0; w < 10 && woke != 0; w++) {
        long long before = vmbusd_thread_switches();
        usleep(300 * 1000);
        woke = vmbusd_thread_switches() - before;
    }
    SIM_ASSERT(woke == 0, "vmbusd's threads woke %lld times in 300 ms with %d idle partitions",
               woke, N);
    for (int i = 0; i < N; i++)
        for (int c = 0; c < ECHO_CHANNELS; c++)
            SIM_ASSERT(sim_echo_roundtrip(chs[i][c], 64, 2, true) == 0,
                       "echo after idling %d/%d", i, c);
    for (int i = 0; i < N; i++)
        sim_vm_free(vms[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_partitions, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_four_partitions, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_partition_accounting, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_mass_disconnect, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_idle_partitions_sleep, fx_setup, fx_teardown),
    };
    SIM_RUN("sim_multi", tests);
}
