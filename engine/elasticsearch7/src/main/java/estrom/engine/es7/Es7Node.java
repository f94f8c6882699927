package estrom.engine.es7;

import java.util.List;

import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.index.mapper.MapperExtrasPlugin;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.percolator.PercolatorPlugin;
import org.elasticsearch.transport.Netty4Plugin;

import estrom.engine.Launcher;

/**
 * One Elasticsearch 7.17 node in this JVM, with just the modules estrom needs: HTTP (netty4), the
 * percolator, and the mapper module a default index mapping relies on (analysis-common has no
 * 7.x release on Maven Central; the built-in analysers are enough here).
 *
 * Usage: Es7Node HOME HTTP_PORT (see Launcher).
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
        Launcher.run(args, "Es7Node", "Elasticsearch", settings -> {
            Node node = new Es7Node(Settings.builder().loadFromMap(settings).build());
            return new Launcher.Made(node::start, node);
        });
    }
}
