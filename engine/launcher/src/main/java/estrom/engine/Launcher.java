package estrom.engine;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

/**
 * What both local engine nodes do around the node itself: read HOME and HTTP_PORT, make the data
 * and log directories, give the settings of a one-node development cluster, and run the node until
 * SIGTERM/SIGINT. EngineNode and Es7Node build against different engines' jars (both poms add this
 * source), so it speaks to them in plain Java types only.
 */
public final class Launcher {

    /** Starts a node. */
    @FunctionalInterface
    public interface Start {
        void start() throws Exception;
    }

    /** A node made from its settings: how to start it, and the node, closed on SIGTERM/SIGINT. */
    public record Made(Start start, AutoCloseable node) {
    }

    /** Makes a node from its settings, not started yet. */
    @FunctionalInterface
    public interface Maker {
        Made make(Map<String, String> settings) throws Exception;
    }

    private Launcher() {
    }

    /**
     * Runs the node {@code maker} makes from the arguments HOME and HTTP_PORT until SIGTERM/SIGINT.
     * Data lives under HOME/data, so stored queries survive a restart with the same HOME.
     */
    public static void run(String[] args, String usage, String engine, Maker maker) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: " + usage + " HOME HTTP_PORT");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        int httpPort = Integer.parseInt(args[1]);
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));
        Made made = maker.make(Map.ofEntries(
            Map.entry("cluster.name", "estrom"),
            Map.entry("node.name", "estrom-engine"),
            Map.entry("path.home", home.toString()),
            Map.entry("path.data", home.resolve("data").toString()),
            Map.entry("path.logs", home.resolve("logs").toString()),
            Map.entry("network.host", "127.0.0.1"),
            Map.entry("http.port", Integer.toString(httpPort)),
            // The transport port is unused (one node) but must not clash with another node here.
            Map.entry("transport.port", Integer.toString(httpPort + 100)),
            Map.entry("discovery.type", "single-node"),
            Map.entry("http.type", "netty4"),
            Map.entry("transport.type", "netty4"),
            // A development node on a shared machine: don't refuse writes when the disk is fullish.
            Map.entry("cluster.routing.allocation.disk.threshold_enabled", "false")
        ));
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                made.node().close();
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }));
        made.start().start();
        System.out.println("estrom engine: " + engine + " listening on http://127.0.0.1:" + httpPort);
        stopped.await();
    }
}
