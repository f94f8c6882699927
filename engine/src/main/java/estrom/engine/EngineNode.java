package estrom.engine;

import java.util.List;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.settings.Settings;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.percolator.PercolatorPlugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * One OpenSearch node in this JVM, with just the modules estrom needs: HTTP (netty4), the
 * percolator, and the analysis and mapper modules a default index mapping relies on.
 *
 * Usage: EngineNode HOME HTTP_PORT (see Launcher).
 */
public final class EngineNode extends Node {

    private EngineNode(Settings settings) {
        super(
            InternalSettingsPreparer.prepareEnvironment(settings, java.util.Map.of(), null, () -> "estrom-engine"),
            List.of(Netty4Plugin.class, PercolatorPlugin.class, CommonAnalysisPlugin.class, MapperExtrasPlugin.class),
            true
        );
    }

    public static void main(String[] args) throws Exception {
        Launcher.run(args, "EngineNode", "OpenSearch", settings -> {
            Node node = new EngineNode(Settings.builder().loadFromMap(settings).build());
            return new Launcher.Made(node::start, node);
        });
    }
}
