package estrom.engine.es7;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CountDownLatch;

import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.index.mapper.MapperExtrasPlugin;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.percolator.PercolatorPlugin;
import org.elasticsearch.transport.Netty4Plugin;

/**
 * One Elasticsearch 7.17 node in this JVM, with just the modules estrom needs: HTTP (netty4), the
 * percolator, and the mapper module a default index mapping relies on (analysis-common has no
 * 7.x release on Maven Central; the built-in analysers are enough here).
 *
 * Usage: Es7Node HOME HTTP_PORT. Data lives under HOME/data, so stored queries survive a
 * restart with the same HOME. Stops cleanly on SIGTERM/SIGINT.
 */
public final class Es7Node extends Node {

    private Es7Node(Settings settings) {
        super(
            InternalSettingsPreparer.prepareEnvironment(settings, java.util.Map.of(), null, () -> "estrom-engine"),
            List.of(Netty4Plugin.class, PercolatorPlugin.class, MapperExtrasPlugin.class),
            true
        );
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: Es7Node HOME HTTP_PORT");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        int httpPort = Integer.parseInt(args[1]);
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));
        Settings settings = Settings.builder()
            .put("cluster.name", "estrom")
            .put("node.name", "estrom-engine")
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("network.host", "127.0.0.1")
            .put("http.port", httpPort)
            // The transport port is unused (one node) but must not clash with another node here.
            .put("transport.port", httpPort + 100)
            .put("discovery.type", "single-node")
            .put("http.type", "netty4")
            .put("transport.type", "netty4")
            // A development node on a shared machine: don't refuse writes when the disk is fullish.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .build();
        Node node = new Es7Node(settings);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }));
        node.start();
        System.out.println("estrom engine: Elasticsearch listening on http://127.0.0.1:" + httpPort);
        stopped.await();
    }
}
